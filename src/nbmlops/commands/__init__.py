"""The commands a user runs around the pipeline: `nbmlops init`, the backtest, retraining, the
live page, nbval, the exports to other engines and the shared registry server. Nothing in the
package's parts imports them."""
