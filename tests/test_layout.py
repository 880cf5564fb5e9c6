"""kfreeze.layout: the stage table dvc.yaml is generated from, and the build folder's names."""

from pathlib import Path

from kfreeze import layout, params

ROOT = Path(__file__).resolve().parents[1]


def test_dvc_yaml_is_generated_from_the_stage_table():
    """Edit kfreeze/layout.py's STAGES (or the targets registry), then 'python -m kfreeze.layout > dvc.yaml'."""
    text = (ROOT / "dvc.yaml").read_text()
    assert text == layout.dvc_yaml(layout.plots_section(text)), \
        "dvc.yaml differs from kfreeze/layout.py: run 'python -m kfreeze.layout > dvc.yaml'"


def test_every_stage_reads_what_an_earlier_stage_writes():
    """The table's data flow: nothing is read before it is written (a stage's own settings aside)."""
    for section in (params.KERAS, params.TF1):
        written = set()
        for stage in layout.STAGES:
            if stage.keras_only and section == params.TF1:
                continue
            reads = stage.reads if section == params.KERAS or stage.tf1_reads is None else stage.tf1_reads
            missing = set(reads) - written
            # verify reads every target's folder: the target stages come before it
            assert not missing, (section, stage.name, missing)
            written |= set(stage.writes)


def test_resolve_writes_a_settings_file_for_every_stage_of_the_table():
    for section in (params.KERAS, params.TF1):
        assert sorted(layout.settings_stages(section)) == sorted(params.STAGE_PARAMS[section])


def test_a_target_in_the_registry_is_a_stage_of_the_table():
    from kfreeze.targets.registry import REGISTRY
    for target in REGISTRY:
        stage = layout.BY_NAME[target.name]
        assert stage.writes == (target.name,) and target.name in layout.BY_NAME["verify"].reads
