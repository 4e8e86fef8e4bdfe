"""Guided lessons on recorded runs (issue 24): each a few short pages beside the live view.

catalogue.py says which run, moment, figure and panel each page shows; content/en.json and
content/zh.json hold the words; pages.py renders a page; predict.py is the "predict the next
selection, then reveal the UCT arithmetic" check; sampling_record.py records the min-p lesson's
distributions; tab.py is the Gradio tab (id "lessons").
"""
