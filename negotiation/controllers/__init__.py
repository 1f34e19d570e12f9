"""HTTP controllers: thin handlers that validate, delegate to a unit of work, and shape replies."""
