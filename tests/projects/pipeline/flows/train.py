from keel import FlowSpec, Parameter, current, step


class TrainFlow(FlowSpec):
    alpha = Parameter("alpha", default=0.1)
    label = Parameter("label", default="none")

    @step
    def start(self):
        self.features = sorted(open("out/" + f).read() for f in __import__("os").listdir("out")
                               if f.startswith("features-"))
        self.next(self.end)

    @step
    def end(self):
        self.score = self.alpha * 4
        current.log_metric("score", self.score)
        print(f"train: alpha={self.alpha} label={self.label} features={len(self.features)}")


if __name__ == "__main__":
    TrainFlow()
