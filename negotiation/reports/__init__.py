"""Session history reports, summaries over a period and the streaming export of rounds.

Read units (functions over a Core ``Connection``, run with ``Database.read``):
:func:`~negotiation.reports.history.session_report`,
:func:`~negotiation.reports.summary.summary_report` and
:func:`~negotiation.reports.export.export_rounds`. :mod:`~negotiation.reports.render` turns the
reports into Markdown, CSV, JSON or a self-contained HTML file.
"""
