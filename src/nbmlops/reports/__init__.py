"""Reports: the reports index the last task writes, and what CI says about a build
(`nbmlops-report`)."""
