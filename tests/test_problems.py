from pinning_hook.problems import KEPT_PER_CODE, Problem, ProblemList


def problem(code: str, number: int, *, advisory: bool = False) -> Problem:
    return Problem(code=code, message=f"{code} {number}", advisory=advisory)


def test_problem_list_keeps_first_of_each_kind() -> None:
    problems = ProblemList(problem("a", number) for number in range(KEPT_PER_CODE + 5))
    problems.append(problem("b", 0))

    assert len(problems) == KEPT_PER_CODE + 6
    assert [p.message for p in problems][-1] == "b 0"
    assert len(list(problems)) == KEPT_PER_CODE + 1
    assert problems.count("a") == KEPT_PER_CODE + 5
    assert problems.codes() == ["a", "b"]


def test_problem_list_merge_keeps_counts() -> None:
    first = ProblemList(problem("a", number) for number in range(KEPT_PER_CODE))
    second = ProblemList(problem("a", number) for number in range(100))

    first.extend(second)

    assert first.count("a") == KEPT_PER_CODE + 100
    assert len(list(first)) == KEPT_PER_CODE


def test_problem_list_rejections_drop_advisories() -> None:
    problems = ProblemList([problem("a", 1), problem("numa-spread", 1, advisory=True), problem("a", 2)])

    rejections = problems.rejections()

    assert [p.message for p in rejections] == ["a 1", "a 2"]
    assert len(rejections) == 2
    assert len(problems) == 3
