"""The course's own tooling, kept out of the story's way: the exercise checks (`checks`), the grader
(`grading`) and the exercise generator (`exercises`)."""
