"""The resource tags customlabels reads: settings that travel with a project or
a model version, set with TagResource (or the Tags of a Create call) by any
stock client. Every tag the product reads is named here, once."""
from __future__ import annotations

PREFIX = "customlabels:"

# On a version (at CreateProjectVersion): its training time budget in seconds.
MAX_TRAINING_SECONDS = PREFIX + "max-training-seconds"
# On a version: release every inference unit after this many idle seconds (scale to zero).
SCALE_TO_ZERO_AFTER_SECONDS = PREFIX + "scale-to-zero-after-seconds"

# --- the feedback loop (services/feedback) ---
# On a version, or on its project for all its versions: the FlowDefinitionArn whose activation
# conditions decide which DetectCustomLabels answers open a human loop.
FLOW_DEFINITION = PREFIX + "flow-definition"
# On a project: train a new version after this many new or changed human-reviewed TRAIN entries...
RETRAIN_AFTER_ENTRIES = PREFIX + "retrain-after-entries"
# ... once no new one came for this many seconds (default 5).
RETRAIN_DEBOUNCE_SECONDS = PREFIX + "retrain-debounce-seconds"
# On a project: "true" starts a challenger that is not worse than the live version and moves the
# project's stable ARN to it.
AUTO_PROMOTE = PREFIX + "auto-promote"
# On a project: the most any label's F1 may drop for a challenger to count as not worse (default 0.05).
PROMOTE_MAX_LABEL_F1_DROP = PREFIX + "promote-max-label-f1-drop"
# On a version the feedback loop created: why it exists.
REQUESTED_BY = PREFIX + "requested-by"
# On a flow definition (its Tags): the most human loops it opens per minute, hour, day.
MAX_LOOPS_PER_MINUTE = PREFIX + "max-loops-per-minute"
MAX_LOOPS_PER_HOUR = PREFIX + "max-loops-per-hour"
MAX_LOOPS_PER_DAY = PREFIX + "max-loops-per-day"
