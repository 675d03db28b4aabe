"""Textbook models written in the modelling language, used to validate the engine against
published results. They are not part of the MMU model."""
