"""Clocks (时限计算): the working-day calendar, clocks built from the tables, and the deadline engine."""
