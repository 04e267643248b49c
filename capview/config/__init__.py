"""deploy.yaml: the model (model.py), what may be written (schema.py), the loader (loader.py).

Import from here: ``from capview.config import Settings, load_config``.
"""

from capview.config.loader import load_config
from capview.config.model import (
    HOOK_POINTS, BuildConfig, Compression, Config, DataConfig, Environment, HealthConfig, HooksConfig, HostConfig,
    OnFailure, Rollout, ServiceConfig, ServiceManager, Settings, SharedConfig,
    SshOptions, Strategy, TraefikConfig, TraefikMode, UploadConfig, UploadMethod,
)

__all__ = [
    "HOOK_POINTS", "BuildConfig", "Compression", "Config", "DataConfig", "Environment", "HealthConfig",
    "HooksConfig", "HostConfig", "OnFailure", "Rollout", "ServiceConfig", "ServiceManager",
    "Settings", "SharedConfig", "SshOptions", "Strategy", "TraefikConfig", "TraefikMode", "UploadConfig",
    "UploadMethod", "load_config",
]
