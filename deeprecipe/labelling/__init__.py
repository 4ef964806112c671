"""Less labelling effort: find wrong labels, see the data through the model, pseudo-label the rest."""
