"""How a model is measured: its scores and classification metrics (`scores`), their 95 %
intervals and paired differences (`intervals`), and a batch's figures from counts gathered chunk
by chunk (`tally`). Importing the package imports none of them."""
