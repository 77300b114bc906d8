"""The ``respike-nm`` command line: the only place that parses arguments and prints."""
