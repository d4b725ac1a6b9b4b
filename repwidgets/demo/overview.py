"""The demo's opening sections: the data, the model and example images."""

from __future__ import annotations


def add_examples(report, sess, per_class: int = 4) -> None:
    """A row of test images per class with their concept labels as captions."""
    targets = sess.targets("test")
    concepts = sess.concepts("test") if sess.concept_names else None
    report.add_section("Example test images and their concept labels")
    for c, name in enumerate(sess.class_names):
        idx = (targets == c).nonzero().flatten()[:per_class].tolist()
        captions = []
        for i in idx:
            labels = (
                [sess.concept_names[k] for k in concepts[i].nonzero().flatten().tolist()]
                if concepts is not None
                else [name]
            )
            captions.append(f"#{i}: " + ", ".join(labels))
        report.add_images(sess.thumbnails(idx, "test", size=96), captions)


def add_data_and_model(report, data, model, history, evaluation: dict, sizes: str) -> None:
    """The data and the model as tables, the training curves and the accuracy per group."""
    import pandas as pd

    from repwidgets import plots

    report.add_section("Data and model")
    config = getattr(data, "config", {}) or {}
    spurious = config.get("spurious_class")
    if isinstance(spurious, int) and 0 <= spurious < len(data.class_names):
        spurious = data.class_names[spurious]
    facts = {
        "data": f"{data.name}: {sizes}",
        "classes": ", ".join(data.class_names),
        "concept labels": len(getattr(data, "concept_names", []) or []),
        "artifact": f"{config.get('artifact')} (mostly on {spurious} in training)",
        "model": type(model).__name__,
        "training": f"{len(history.loss)} epochs, {history.seconds:.0f} s",
        "test accuracy": f"{evaluation['accuracy']:.3f}",
    }
    if "worst_group_accuracy" in evaluation:
        facts["worst group"] = (
            f"{evaluation['worst_group']}: {evaluation['worst_group_accuracy']:.3f}"
        )
    report.add_table(pd.DataFrame({"": list(facts), "value": [str(v) for v in facts.values()]}))
    report.add_figure(
        plots.training_curves(
            {
                "loss": history.loss,
                "train accuracy": history.accuracy,
                "val accuracy": history.val_accuracy,
            },
            title="Training curves",
        )
    )
    if "groups" not in evaluation:
        return
    groups = evaluation["groups"]
    report.add_heading("Test accuracy per group (class / artifact)")
    report.add_table(
        pd.DataFrame(
            {
                "group": list(groups),
                "accuracy": list(groups.values()),
                "samples": [evaluation.get("group_counts", {}).get(g, "") for g in groups],
            }
        )
    )
    report.add_figure(
        plots.bars(
            list(groups),
            list(groups.values()),
            title="Test accuracy per group (class / artifact): the worst group is the shortcut's",
            y_label="accuracy",
            y_range=(0, 1),
        )
    )
