"""Background tasks: the worker's loop, one handler per task kind, and the callbacks of finished tasks."""
