"""Read the latest TrainDemo run back with the client."""

from keel import Flow

run = Flow("TrainDemo").latest_run
print(f"{run.pathspec}: {run.status}, params {run.params}")
print(f"best learning rate {run.data.best_lr}, mse {run.data.best_mse:.4f}")
for task in run["train"]:
    curve = run.metrics[f"mse@{task.data.lr}"]
    print(f"  {task.pathspec}: lr={task.data.lr:<6} final mse {task.data.mse:.4f} "
          f"({len(curve)} points logged)")
print("first rows of X (from the start step):", run["start"].task.data.X[:1].round(3).tolist())
print("stdout of start:", run["start"].task.stdout.strip())
