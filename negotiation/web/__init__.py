"""Server-rendered pages for people: ``/ui/login``, ``/ui/sessions``, ``/ui/sessions/{id}``."""
