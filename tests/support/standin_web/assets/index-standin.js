// Stand-in for the ComfyUI frontend bundle: connects to the websocket the way the frontend's api.ts
// does (api_base = the page's path without its last part, so it works behind a path prefix) and
// shows the first status message, so a browser test can see the page reached the API through a proxy.
const apiBase = location.pathname.split("/").slice(1, -1).join("/");
const scheme = location.protocol === "https:" ? "wss" : "ws";
const socket = new WebSocket(`${scheme}://${location.host}${apiBase ? "/" + apiBase : ""}/ws`);
socket.addEventListener("message", (event) => {
  if (typeof event.data !== "string") return;
  const message = JSON.parse(event.data);
  if (message.type === "status") {
    document.getElementById("vue-app").textContent = `queue_remaining ${message.data.status.exec_info.queue_remaining}`;
    document.title = "ComfyUI (connected)";
  }
});
