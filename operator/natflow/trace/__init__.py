"""``natflow trace``: one conversation's flow-log records, leg by leg, with the path checked."""
