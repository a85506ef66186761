"""MiDaS-compatible depth for images and clips (front door: `depth.estimate_video_depth`)."""
