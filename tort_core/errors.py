"""User-facing errors.

Everything a user can get wrong (a spec, a name, a path, an override) raises a subclass of
`TortError` whose message is one line that names the culprit and the fix. The CLI turns these
into exit code 2 without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno

# OSErrors a user fixes on the file system (a full disk, a quota, a read-only mount): the command
# line reports them as one line, and a run stopped by one resumes with the same command.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class TortError(Exception):
    """A problem with the user's input, reported as one line."""


class ConfigError(TortError):
    """An invalid configuration value, key, profile or recipe."""


class DataError(TortError):
    """A dataset that cannot be found or does not have the expected layout."""


class TrainingFailed(RuntimeError):
    """The run itself failed (for example a non-finite loss): not a user-input error."""
