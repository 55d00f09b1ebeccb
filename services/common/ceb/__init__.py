"""The CEB XML codec: China customs' cross-border e-commerce messages ↔ documents.

``parse_message``/``parse_file`` read any message of ``documents.MESSAGE_TYPES`` into the
document shape of ``services.common.documents``; ``write_message`` writes it back. See
README.md in this folder for what is accepted and refused.
"""
from services.common.ceb.errors import CebError, RejectedDocument
from services.common.ceb.reader import ParsedMessage, parse_file, parse_message
from services.common.ceb.writer import write_message

__all__ = ["CebError", "ParsedMessage", "RejectedDocument", "parse_file", "parse_message", "write_message"]
