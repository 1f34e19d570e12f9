"""Records and decides price negotiations between a freight broker's agent and truck carriers."""

from typing import TYPE_CHECKING

from negotiation.ids import generate_session_id, generate_uuid_session_id, validate_session_id

if TYPE_CHECKING:
    from negotiation.api import ahandle_negotiation, handle_negotiation

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ahandle_negotiation",
    "generate_session_id",
    "generate_uuid_session_id",
    "handle_negotiation",
    "validate_session_id",
]


def __getattr__(name: str) -> object:
    # The service API pulls in the database layer; import it only when asked for.
    if name in ("handle_negotiation", "ahandle_negotiation"):
        from negotiation import api

        return getattr(api, name)
    raise AttributeError(name)
