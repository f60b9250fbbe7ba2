"""The Data Docs site of a validation: where it goes, what it shows, and views that compile their
templates once per process.

Great-expectations renders a page through a Jinja view, and every Data Docs build makes new views, each
with a new Jinja environment that parses and compiles the same ~33 templates again (about two thirds of
a build of the three validation pages and the index). The site configuration names the views a site
uses (GE's documented `view` setting of a section and of the index builder); the views here are GE's own
page views that keep one environment per process, so the templates are compiled once: in the run
workers' forkserver (its warm-up builds Data Docs), not in every run. The pages are the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

# No usage analytics from a batch job; must be set before great_expectations is imported.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView  # noqa: E402

# The Data Docs site under the data docs folder of a validation (where GE's file contexts put it).
DOCS_SITE_NAME = "local_site"
DOCS_SITE = Path("gx", "uncommitted", "data_docs", DOCS_SITE_NAME)


class _OneEnvironment:
    """A GE Jinja view that shares its environment (and the templates compiled in it) with the views of
    its class and folders made before it in this process. The environment's filters are bound to the
    first view; a view keeps nothing else but its two folders, which are part of the key."""

    _environments: ClassVar[dict[tuple[type, str | None, str | None], Any]] = {}
    env: Any

    def __init__(self, custom_styles_directory: str | None = None, custom_views_directory: str | None = None) -> None:
        key = (type(self), custom_styles_directory, custom_views_directory)
        shared = self._environments.get(key)
        if shared is None:
            super().__init__(custom_styles_directory, custom_views_directory)  # type: ignore[call-arg]
            self._environments[key] = self.env
            return
        self.custom_styles_directory = custom_styles_directory
        self.custom_views_directory = custom_views_directory
        self.env = shared


class PageView(_OneEnvironment, DefaultJinjaPageView):
    """GE's validation result page view, its templates compiled once per process."""


class IndexPageView(_OneEnvironment, DefaultJinjaIndexPageView):
    """GE's Data Docs index page view, its templates compiled once per process."""


def _view(cls: type) -> dict[str, str]:
    return {"module_name": cls.__module__, "class_name": cls.__name__}


def site_config(data_docs_dir: Path) -> dict[str, Any]:
    """A filesystem Data Docs site under data_docs_dir: the index and the validation result pages."""
    return {
        "class_name": "SiteBuilder", "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(Path(data_docs_dir) / DOCS_SITE)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "view": _view(IndexPageView)},
        # Validation results only: each page lists every expectation with its result, so the
        # suites' own pages (as many again to render) would add nothing.
        "site_section_builders": {"expectations": "0", "profiling": "0",
                                  "validations": {"view": _view(PageView)}},
    }


def index_page(data_docs_dir: Path) -> str | None:
    """The site's index page when it was built."""
    index = Path(data_docs_dir) / DOCS_SITE / "index.html"
    return str(index) if index.exists() else None
