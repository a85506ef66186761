"""The story application: story files, the planner, rendering a whole story, and the offline demo.

    story = plan_story(prose, parse_cast(["Rex=<rex>"]), PlanOptions(title="Rex", preset="tiny"))
    write_story(story, "story.yaml")                # prose -> single-event plots, the preset's defaults
    manifest = render_story("story.yaml", "my_index", "out", RenderOptions(preset="tiny"))
"""

from storyreel.story.format import Story, load_story, parse_story, resolved_plot_settings
from storyreel.story.planner import (
    Cast,
    LLMOptions,
    PlanOptions,
    parse_cast,
    plan_rule_based,
    plan_story,
    plan_with_llm,
    story_yaml,
    write_story,
)
from storyreel.story.render import RenderOptions, render_story

__all__ = ["Cast", "LLMOptions", "PlanOptions", "RenderOptions", "Story", "load_story", "parse_cast", "parse_story",
           "plan_rule_based", "plan_story", "plan_with_llm", "render_story", "resolved_plot_settings", "story_yaml",
           "write_story"]
