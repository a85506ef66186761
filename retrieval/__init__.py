"""Query an index: text or image → ranked clips (front door: `retrieval.search`)."""
