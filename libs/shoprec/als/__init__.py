"""ALS collaborative filtering: id maps, training and tuning, blocked top-N, the train-als job."""
