"""The model card of a trained model (the model-card stage): inputs.py reads what it is built
from, sections.py says it, figures.py draws it, render.py writes it as Markdown and HTML."""
