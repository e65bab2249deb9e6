"""Settings: one base module plus a small module per concern, all read from the environment.

With no environment at all this is the embedded default (SQLite, eager Celery tasks, DEBUG).
"""
from .base import *  # noqa: F401,F403
from .database import *  # noqa: F401,F403
from .celery import *  # noqa: F401,F403
from .keycloak import *  # noqa: F401,F403
from .security import *  # noqa: F401,F403
from .exchange import *  # noqa: F401,F403
from .audit import *  # noqa: F401,F403
from .governance import *  # noqa: F401,F403
from .audit import _dev_key  # noqa: F401 (compared by the check below)
from .devsecrets import refuse_development_secrets

refuse_development_secrets(globals())
