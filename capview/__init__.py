"""capview: immutable, Capistrano-style releases over SSH, and a dashboard to see them."""

__version__ = "0.1.0"
