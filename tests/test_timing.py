from bench.measure.timing import measure, timed


class FakeClock:
    """Each call advances time; each measured call costs `cost` ns."""

    def __init__(self, cost: int):
        self.now = 0
        self.cost = cost
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.now

    def work(self):
        self.now += self.cost


def test_runs_until_both_minimum_count_and_minimum_time():
    clock = FakeClock(cost=100_000_000)  # 0.1 s per call
    samples = measure(clock.work, min_iterations=3, min_seconds=1.0, max_seconds=10, clock=clock)
    assert samples == [100_000_000] * 10  # time was the binding minimum
    clock = FakeClock(cost=100_000_000)
    samples = measure(clock.work, min_iterations=25, min_seconds=1.0, max_seconds=10, clock=clock)
    assert len(samples) == 25  # count was the binding minimum


def test_maximum_time_caps_the_count():
    clock = FakeClock(cost=1_000_000_000)
    samples = measure(clock.work, min_iterations=100, min_seconds=0, max_seconds=3.0, clock=clock)
    assert len(samples) == 3


def test_at_least_one_sample_and_two_clock_reads_per_iteration():
    clock = FakeClock(cost=5)
    samples = measure(clock.work, min_iterations=1, min_seconds=0, max_seconds=0.000_000_001, clock=clock)
    assert samples == [5]
    assert clock.reads == 3  # one for the start, two around the call


def test_timed_returns_result_and_milliseconds():
    clock = FakeClock(cost=2_500_000)

    def call():
        clock.work()
        return "out"

    assert timed(call, clock=clock) == ("out", 2.5)


def test_a_pipeline_loop_ends_only_on_whole_cycles_of_its_texts():
    clock = FakeClock(cost=100_000_000)
    samples = measure(clock.work, min_iterations=3, min_seconds=1.0, max_seconds=10, clock=clock, cycle=4)
    assert len(samples) == 12  # 10 calls would do; the cycle of 4 texts is finished
    clock = FakeClock(cost=1_000_000_000)
    samples = measure(clock.work, min_iterations=100, min_seconds=0, max_seconds=3.0, clock=clock, cycle=4)
    assert len(samples) == 4  # the maximum falls in the first cycle, which is finished
