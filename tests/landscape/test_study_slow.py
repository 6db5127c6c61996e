"""The S3 teacher–student pattern of the notes, end to end (slow: about two minutes)."""

import pytest

from equirelax.experiments.landscape import StudyConfig, run_study


@pytest.mark.slow
def test_s3_trivial_students_are_stuck_at_saddles_and_relaxation_finds_the_teachers_type():
    result = run_study(StudyConfig(group="S3", teacher_rep="natural", student_rep="3*trivial",
                                   seeds=2))
    var = result["target_variance"]
    runs = result["runs"]
    for r in runs:
        assert r["exact_mse"] > 0.9 * var  # only functions of sum(x) are reachable
        assert r["hessian"]["kind"] == "escapable saddle"
        assert r["hessian"]["gradient_normal"] < 1e-10  # Corollary A1
    threshold = StudyConfig().success_rel_mse * var  # the study's own, relative to Var(y)
    escaped = [r for r in runs if r["relaxed_mse"] <= threshold]
    assert escaped, [r["relaxed_mse"] for r in runs]
    for r in escaped:
        assert r["detection"]["decomposition"] == "[S3/C2]"
        assert r["detection"]["same_type_as_teacher"]
        assert r["proj_original_mse"] > var  # worse than predicting the mean
        assert r["proj_detected_mse"] < threshold
