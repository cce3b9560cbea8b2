"""What `hotspot-agent measure` and `check-config` say to the person at the site, in their language.

gettext (the standard library's), domain "hotspot-agent", catalogues in agent/locale/<lang>/LC_MESSAGES:
Vietnamese when LANGUAGE, LC_ALL, LC_MESSAGES or LANG say vi (e.g. LANG=vi_VN.UTF-8), English
otherwise. The .po source is edited by hand; the .mo next to it is compiled from it and committed
(`msgfmt -o hotspot-agent.mo hotspot-agent.po`; tests/test_i18n.py checks that they agree and that
every message in the code is translated). Logs and metrics stay English: they are for engineers.
"""

from __future__ import annotations

import gettext
from pathlib import Path

DOMAIN = "hotspot-agent"
LOCALE_DIR = Path(__file__).with_name("locale")


def _(message: str) -> str:
    """`message` in the user's language (the locale is read at each call, so tests can change it)."""
    return gettext.translation(DOMAIN, LOCALE_DIR, fallback=True).gettext(message)
