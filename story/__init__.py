"""The story application: story files, the planner, rendering a whole story, and the offline demo.

    story = plan_rule_based(prose, {"Rex": "<rex>"}, title="Rex")   # prose -> single-event plots
    write_story(story, "story.yaml")                                  # preset defaults written in
    manifest = render_story("story.yaml", "my_index", "out", RenderOptions(preset="tiny"))
"""

from storyreel.story.format import Story, load_story, parse_story, resolved_plot_settings
from storyreel.story.planner import plan_rule_based, plan_with_llm, story_yaml, write_story
from storyreel.story.render import RenderOptions, render_story

__all__ = ["RenderOptions", "Story", "load_story", "parse_story", "plan_rule_based", "plan_with_llm", "render_story",
           "resolved_plot_settings", "story_yaml", "write_story"]
