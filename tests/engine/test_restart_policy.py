from synsup.supervisor.engine.restart_policy import RestartPolicy


def test_failed_starts_back_off_exponentially_then_give_up():
    policy = RestartPolicy()
    delays = [policy.delay_after_exit(None) for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 8.0, None]


def test_backoff_is_capped_at_60s():
    policy = RestartPolicy(max_failed_starts=100)
    delays = [policy.delay_after_exit(None) for _ in range(9)]
    assert delays[-3:] == [60.0, 60.0, 60.0]


def test_stable_unit_restarts_at_once():
    policy = RestartPolicy()
    assert policy.delay_after_exit(60.0) == 0.0
    assert policy.delay_after_exit(3600.0) == 0.0


def test_flapping_unit_counts_towards_the_crash_loop_limit():
    """Regression: a unit crashing 2 s after ready backed off forever and was never failed."""
    policy = RestartPolicy()
    delays = [policy.delay_after_exit(2.0) for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 8.0, None]


def test_a_stable_run_resets_the_failed_start_count():
    policy = RestartPolicy()
    for _ in range(4):
        policy.delay_after_exit(None)
    assert policy.delay_after_exit(60.0) == 0.0
    assert policy.delay_after_exit(None) is not None


def test_ten_minutes_ready_resets_the_backoff():
    policy = RestartPolicy(max_failed_starts=100)
    for _ in range(5):
        policy.delay_after_exit(5.0)
    assert policy.delay_after_exit(5.0) == 32.0
    assert policy.delay_after_exit(600.0) == 0.0
    assert policy.delay_after_exit(5.0) == 1.0


def test_reset_forgets_everything():
    policy = RestartPolicy()
    for _ in range(4):
        policy.delay_after_exit(None)
    policy.reset()
    assert policy.delay_after_exit(None) == 1.0
