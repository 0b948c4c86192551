"""Operator tools: the ``svsm`` command (:mod:`.command`), its terminal rendering (:mod:`.render`,
:mod:`.humanize`), the server checks of ``svsm doctor`` (:mod:`.doctor`) and the web viewer
(:mod:`.viewer`). Needs the ``cli`` extra (the viewer: ``ui``); the core package never imports it."""
