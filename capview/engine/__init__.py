"""UI-free operations on hosts. Reports progress as Event dataclasses; never imports textual or rich."""
