"""The classifier's classes. Their order is fixed: index 1 is the positive class for every metric."""

CLASSES: tuple[str, str] = ("not_worn", "worn")
POSITIVE = "worn"
NEGATIVE = "not_worn"
