"""Input errors reported to the user as one line: ``error: FILE:LINE: field: what is wrong``."""


class InputError(Exception):
    """A malformed input file; the CLI prints it on one line and exits with status 2."""

    def __init__(self, path, line, field, message):
        super().__init__(f'{path}:{line}: {field}: {message}')
        self.path = path
        self.line = line
        self.field = field
        self.message = message
