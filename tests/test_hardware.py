"""Hardware profiles: every shipped file validates; malformed ones are rejected naming the field."""

from __future__ import annotations

import pytest
import yaml

from respike_nm.hardware import ProfileError, builtin_profiles, load_profile

REQUIRED = {"cmos45nm", "loihi", "loihi2", "truenorth", "spinnaker", "spinnaker2", "a100", "h100"}


def test_every_required_target_ships():
    assert REQUIRED <= set(builtin_profiles())


@pytest.mark.parametrize("name", builtin_profiles())
def test_shipped_profiles_carry_provenance(name):
    prof = load_profile(name)
    for fig in [*prof.costs.values(), *prof.limits.values()]:
        assert fig.source and fig.kind in ("measured", "simulated", "derived") and fig.value >= 0


def test_published_figures_are_carried_as_published():
    # the profiles' sources: Horowitz ISSCC 2014; Davies et al. IEEE Micro 2018; Merolla et al. 2014
    assert load_profile("cmos45nm").energy_pj("mac_fp32") == pytest.approx(0.9 + 3.7)
    assert load_profile("loihi").energy_pj("synop") == 23.6
    assert load_profile("truenorth").energy_pj("synop") == 26.0
    assert load_profile("spinnaker").energy_pj("synop") == pytest.approx(13_300)
    assert load_profile("h100").energy_pj("flop_bf16") == 0.71


def _write(tmp_path, mutate):
    raw = yaml.safe_load(open(load_profile("loihi2").path.replace("hw_profiles/", _root())).read())
    mutate(raw)
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _root():
    from importlib import resources

    return str(resources.files("hw_profiles")) + "/"


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r["costs"]["synop"].pop("unit"), "costs.synop.unit"),
    (lambda r: r["costs"]["synop"].__setitem__("value", -1), "costs.synop.value"),
    (lambda r: r["costs"]["synop"].__setitem__("unit", "parsecs"), "costs.synop.unit"),
    (lambda r: r["costs"]["synop"].__setitem__("kind", "guessed"), "costs.synop.kind"),
    (lambda r: r["costs"].__setitem__("teleport", r["costs"]["synop"]), "costs.teleport"),
    (lambda r: r.__setitem__("colour", "blue"), "colour"),
    (lambda r: r["limits"]["weight_bits"].__setitem__("unit", "pJ"), "limits.weight_bits.unit"),
    (lambda r: r["costs"]["synop"].pop("source"), "costs.synop.source"),
    (lambda r: r["limits"]["cores_per_chip"].__setitem__("value", 0), "limits.cores_per_chip.value"),
    (lambda r: r["limits"]["neurons_per_core"].__setitem__("value", 0.5), "limits.neurons_per_core.value"),
    (lambda r: r["limits"]["weight_bits"].__setitem__("value", 0), "limits.weight_bits.value"),
])
def test_malformed_profile_is_rejected_naming_the_field(tmp_path, mutate, field):
    path = _write(tmp_path, mutate)
    with pytest.raises(ProfileError, match=field.replace(".", r"\.")) as err:
        load_profile(path)
    assert str(path) in str(err.value)


def test_a_chip_of_zero_cores_is_refused_not_fitted(tmp_path):
    """``cores_per_chip: 0`` made the mapper report that a network "fits on 1 chip"."""
    path = _write(tmp_path, lambda r: r["limits"]["cores_per_chip"].__setitem__("value", 0))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value) == (f"{path}.limits.cores_per_chip.value: a count must be a whole number of "
                              "at least 1, not 0")



def test_a_profile_that_is_not_yaml_is_one_line_naming_file_line_and_column(tmp_path):
    """PyYAML's own message takes five lines; the profile reader gives one, with the place."""
    p = tmp_path / "chip.yaml"
    p.write_text("name: chip\ncosts: {synop: [1, 2\n")
    with pytest.raises(ProfileError) as err:
        load_profile(p)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{p}: not valid YAML: line 3, column 1: "), message


def test_a_profile_that_is_not_utf8_is_one_line_naming_the_file(tmp_path):
    p = tmp_path / "chip.yaml"
    p.write_bytes(b"name: chip\ndescription: caf\xe9\n")
    with pytest.raises(ProfileError, match=r"chip\.yaml: not UTF-8 text \(byte 27\)$"):
        load_profile(p)
