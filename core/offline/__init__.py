"""The offline policy methods, SFT and DPO: a policy trained on fixed data (the project's labelled
pairs, or SFT's file) with no sampling and no reward model. Their settings (config), what the CLI and
the app know of them (method), DPO's losses (losses), sequences that know where their response
starts (data), and their objectives on the shared training loop and the job (train). Nothing is
imported here, so naming a module of this package loads torch only when that module needs it."""
