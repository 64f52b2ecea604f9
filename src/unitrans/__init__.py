"""unitrans: zero-resource cross-lingual NER by UniTrans (Wu et al., IJCAI 2020)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("unitrans")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
