"""The portal's own settings (production-like when DJANGO_DEBUG=false), with the benchmark's
URLconf, which adds the bare baseline endpoint. Production never loads this module."""
from scp_portal.settings import *

ROOT_URLCONF = "bench.urls"
