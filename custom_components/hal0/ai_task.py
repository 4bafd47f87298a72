"""AI Task entity: Home Assistant's ``ai_task.generate_image`` rendered by the bridge's GPU.

Thin on purpose: the task's instructions become one image request — an edit of the first attached
picture when there is one (``SUPPORT_ATTACHMENTS``: a camera snapshot, a media file), a generation
otherwise; Home Assistant stores the PNG bytes in its media library.
"""

from __future__ import annotations

from homeassistant.components import ai_task, conversation
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import Hal0Error
from .const import CONF_SIZE, DOMAIN
from .coordinator import Hal0ConfigEntry
from .entity import Hal0Entity
from .helpers import read_file, translate_error
from .options import generation_defaults

PARALLEL_UPDATES = 0

IMAGE_GENERATOR = EntityDescription(key="ai_task", translation_key="ai_task")


async def async_setup_entry(
    hass: HomeAssistant, entry: Hal0ConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    coordinator = entry.runtime_data
    if "images" in coordinator.info.capabilities and coordinator.info.models:
        async_add_entities([Hal0AITaskEntity(coordinator, IMAGE_GENERATOR)])


class Hal0AITaskEntity(Hal0Entity, ai_task.AITaskEntity):
    """Generates images with the entry's image options (else the bridge's defaults); the bridge switches
    the GPU as needed."""

    _attr_supported_features = (
        ai_task.AITaskEntityFeature.GENERATE_IMAGE | ai_task.AITaskEntityFeature.SUPPORT_ATTACHMENTS
    )

    async def _async_generate_image(
        self, task: ai_task.GenImageTask, chat_log: conversation.ChatLog
    ) -> ai_task.GenImageTaskResult:
        source = await self._source(task)
        client = self.coordinator.client
        try:
            defaults = generation_defaults(self.coordinator.config_entry.options)
            if source is None:
                result = await client.generate_image(task.instructions, response_format="b64_json", **defaults)
            else:  # an edit keeps its picture's own size unless told otherwise
                defaults.pop(CONF_SIZE, None)
                result = await client.edit_image(task.instructions, source, response_format="b64_json", **defaults)
        except Hal0Error as err:
            raise translate_error(err, self.coordinator) from err
        if not result.images:
            raise HomeAssistantError(translation_domain=DOMAIN, translation_key="no_image")
        if result.urls:
            self.coordinator.record_image(result.urls[-1], model=result.model, seed=result.seed, prompt_id=result.prompt_id)
        width, height = result.width_height
        return ai_task.GenImageTaskResult(
            image_data=result.images[0],
            conversation_id=chat_log.conversation_id,
            mime_type="image/png",
            width=width,
            height=height,
            model=result.model,
        )

    async def _source(self, task: ai_task.GenImageTask) -> bytes | None:
        """The first attached picture's bytes (an edit), or None (a generation)."""
        attachments = task.attachments or []
        for attachment in attachments:
            if attachment.mime_type.startswith("image/"):
                return await self.hass.async_add_executor_job(read_file, attachment.path)
        if attachments:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="attachment_not_image",
                translation_placeholders={"mime_type": attachments[0].mime_type},
            )
        return None
