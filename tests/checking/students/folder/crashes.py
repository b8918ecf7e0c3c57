"""A submission that takes its process down."""

import os

os.abort()
