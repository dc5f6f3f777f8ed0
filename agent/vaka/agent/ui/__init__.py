"""The TV unit's screen: what the citizen sees on their TV, and the buttons they press.

- :mod:`~vaka.agent.ui.states`: what can be shown (``Idle``, ``Incoming``, ``Calling``,
  ``InCall``, ``Trouble``, ``Message``, ``Enrolling``) and the :class:`ButtonId` a press reports;
- :mod:`~vaka.agent.ui.catalog`: the texts, in Swedish, Danish and English;
- :mod:`~vaka.agent.ui.layout`: where things go (:func:`render`, :func:`hit_test`), drawn by
  :mod:`~vaka.agent.ui.drawing`;
- :mod:`~vaka.agent.ui.screen`: :class:`TvScreen` (an OpenCV window) and :class:`HeadlessScreen`.

Importing this package does not import OpenCV: only opening a :class:`TvScreen` does.
"""

from vaka.agent.ui.catalog import LANGUAGES, Catalog, CatalogError
from vaka.agent.ui.gui import ScreenError
from vaka.agent.ui.layout import hit_test, render
from vaka.agent.ui.screen import HeadlessScreen, PressHandler, Screen, TvScreen
from vaka.agent.ui.states import (
    ButtonId,
    Calling,
    Enrolling,
    Idle,
    InCall,
    Incoming,
    Message,
    PeopleShown,
    PrivacyChoice,
    PrivacyOn,
    ScreenState,
    StaffReach,
    Trouble,
    ViewingLogShown,
)

__all__ = [
    "LANGUAGES",
    "ButtonId",
    "Calling",
    "Catalog",
    "CatalogError",
    "Enrolling",
    "HeadlessScreen",
    "Idle",
    "InCall",
    "Incoming",
    "Message",
    "PeopleShown",
    "PressHandler",
    "PrivacyChoice",
    "PrivacyOn",
    "Screen",
    "ScreenError",
    "ScreenState",
    "StaffReach",
    "Trouble",
    "TvScreen",
    "ViewingLogShown",
    "hit_test",
    "render",
]
