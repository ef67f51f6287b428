// Graphics: annotated detections and plots (issue 6).
