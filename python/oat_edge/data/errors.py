"""The one error type of the data package: a dataset that cannot be read as declared."""


class DatasetError(ValueError):
    """Bad or unreadable dataset. The message names the file, and the episode and frame when the
    problem is inside one, says what was expected and what was found, and what to do."""


def where(path, episode=None, frame=None) -> str:
    """'path', 'path, episode 3' or 'path, episode 3, frame 17' for error messages."""
    s = str(path)
    if episode is not None:
        s += f", episode {int(episode)}"
    if frame is not None:
        s += f", frame {int(frame)}"
    return s
