"""Resources: the only code that talks to the outside world."""
