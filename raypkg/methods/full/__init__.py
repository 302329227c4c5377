"""Full-data training (`effray train`): the baseline every method is compared with."""
