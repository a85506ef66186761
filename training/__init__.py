"""Character training (Animate-A-Story TimeInv + spatial LoRA on static pseudo-videos with depth).

    summary = train_character("teddy_photos/", "teddy.safetensors", TrainSettings(token="<teddy>",
                              init_word="bear"), preset="tiny")
"""

from storyreel.training.train import CharacterTrainer, TrainSettings, train_character

__all__ = ["CharacterTrainer", "TrainSettings", "train_character"]
