import time


def handler(event, context):
    seconds = float(event.get("seconds", 2))
    print(f"sleeping {seconds} s with {context.get_remaining_time_in_millis()} ms left")
    time.sleep(seconds)
    return {"slept": seconds}
