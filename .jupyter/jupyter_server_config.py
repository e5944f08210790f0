# Loaded when JUPYTER_CONFIG_DIR points here (`make lab` does that).
# jupytext's contents manager keeps the file browser working next to ploomber's
# extension, which injects each notebook's parameters when it opens.
c = get_config()  # noqa: F821
c.ServerApp.contents_manager_class = "jupytext.TextFileContentsManager"
